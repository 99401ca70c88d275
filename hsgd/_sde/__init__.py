"""Homogenized SGD, one module per (problem, optimizer) cell, and what they share (`common`)."""

from .common import default_dt as default_dt
