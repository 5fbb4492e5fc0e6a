import ssl

import ferroloop

from websockets_server import main

ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ssl_context.load_cert_chain("cert.pem", "key.pem")
ferroloop.run(main(8766, ssl_context))
