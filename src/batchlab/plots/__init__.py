"""Figures from computed data (matplotlib, Agg backend).  Nothing here trains networks."""
