"""The Docker Server of the seed article: Twisted endpoints, no Docker nouns."""
