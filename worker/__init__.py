"""Celery worker that runs sidyp_engine calibration jobs."""
