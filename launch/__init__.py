"""Launchers: assemble `python -m lmsi.<stage> --gin_file=... --gin.X=...`.

They hold no hyperparameters and import nothing from `lmsi`, so they run in
a venv that has only the launcher's own client (xmanager, gcloud).
"""
