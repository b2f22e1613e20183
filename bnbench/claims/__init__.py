"""The claims about batch norm on trial: their registry, and each one's verdict from its sweep."""
