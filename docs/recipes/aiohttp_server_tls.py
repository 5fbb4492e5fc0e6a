import ssl

import ferroloop
from aiohttp import web

from aiohttp_server import app

ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ssl_context.load_cert_chain("cert.pem", "key.pem")
loop = ferroloop.new_event_loop()
web.run_app(app, host="127.0.0.1", port=8443, ssl_context=ssl_context, loop=loop)
