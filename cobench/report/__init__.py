"""Stage 6, showing: the HTML report, its sections and number formats, and one module per figure."""
