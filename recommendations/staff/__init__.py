"""What the staff pages show: the dashboard's figures and its SVG charts.

May import: the models, core.
"""
