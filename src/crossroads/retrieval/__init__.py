"""Document collections for retrieval: parsing, chunking, embedding, hybrid search.

SQL lives in `storage/collection_store.py`; this package holds everything that is not SQL.
"""
