"""What happens after a run: its line in the export's history, and notifications to people."""
