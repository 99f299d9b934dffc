"""The retention process: outcomes joined from the topics, offer recommender, learning policy."""
