"""Tools built on top of recipes and the Trainer; the `tamrin` commands call them."""
