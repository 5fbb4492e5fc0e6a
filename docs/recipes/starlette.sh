uvicorn starlette_app:app --loop ferroloop:new_event_loop
