gunicorn app:app -k gunicorn_worker.FerroloopWorker
gunicorn app:app -k gunicorn_worker.FerroloopWorker --workers 4 --keyfile key.pem --certfile cert.pem
