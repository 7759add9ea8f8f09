;; A module with nothing in it. Expected: Error::MissingExport (`memory`) at load.
(module)
