uvicorn fastapi_app:app --loop ferroloop:new_event_loop
