"""Thin Ray entry points over the landslide library (Ray Train, Ray Data). The library never imports Ray."""
