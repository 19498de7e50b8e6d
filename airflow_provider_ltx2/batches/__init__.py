"""Many generations in one task: the table, the progress kept across deferrals and tries, and the rounds."""
