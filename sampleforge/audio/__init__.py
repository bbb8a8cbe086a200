"""Audio front end: file I/O, mel spectrograms, Griffin-Lim, one-shot finishing."""
