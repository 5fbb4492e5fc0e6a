from uvicorn_worker import UvicornWorker


class FerroloopWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "ferroloop:new_event_loop", "http": "auto"}
