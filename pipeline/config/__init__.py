"""Run configuration: settings that validate themselves, job files and connections."""
