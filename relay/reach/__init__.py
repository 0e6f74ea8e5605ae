"""Reach (issue 20): the network's figures over a period — readers, views, deliveries, replies, members by
country, opt-outs and ladder changes — as numbers (figures.py), rolled up by day (rollups.py), drawn
as SVG charts (charts.py), and the headline figures an admin may publish (headline.py). Counts only:
no table here holds an address or follows a reader (relay/library/readership.py)."""
