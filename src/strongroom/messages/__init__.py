"""Understanding chat exports: recognise them by structure, read their messages, catalogue them.

``model`` is the contract between the format readers (``formats``) and the catalogue
(``catalog``): readers turn an export into :class:`Message` records; the catalogue stores,
indexes and compares them per snapshot."""
