"""Views of a run's results for people: shared by the report, the notebook and the dashboard.

`load` reads SQLite and the Parquet lake (no Spark), `views` turns the tables into the frames
that are charted (pure pandas), `figures` draws them with plotly, `static` with matplotlib.
"""
