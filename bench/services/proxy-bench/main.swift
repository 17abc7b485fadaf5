// placeholder, filled in by the bench commit
