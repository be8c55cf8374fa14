"""Schedules: pure cron rules, and the loop that runs a job at its times."""
