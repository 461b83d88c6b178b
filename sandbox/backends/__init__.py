"""The sandbox backends: one module each (docker.py, process.py), imported only when asked for."""
