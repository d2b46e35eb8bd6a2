"""Side-by-side benchmark of cutout and medallion 3.0.0 (the OASIS TAXII 2.1 reference server): ``make bench``."""
