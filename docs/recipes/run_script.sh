python -m ferroloop script.py
python -m ferroloop -m script
python -m ferroloop -c "import asyncio, script; asyncio.run(script.main())"
