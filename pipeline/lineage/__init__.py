"""Reading a run back from ML Metadata: queries, the lineage graph of a pushed model and its
text form, the run summary and the HTML run report."""
