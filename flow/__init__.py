"""Open hardware co-design flow for the CMS HGCAL ECON-T autoencoder."""
__version__ = "0.1.0"
