"""What happened: the record every request leaves."""
