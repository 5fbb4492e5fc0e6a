uvicorn app:app --loop ferroloop:new_event_loop
uvicorn app:app --loop ferroloop:new_event_loop --ssl-keyfile key.pem --ssl-certfile cert.pem
uvicorn app:app --loop ferroloop:new_event_loop --workers 4
