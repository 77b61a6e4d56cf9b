"""pairforge: contrastive training data (pairs, filtered hard negatives, contrast pairs) as versioned Parquet."""
