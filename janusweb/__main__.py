from janusweb.cli import entry

entry()
