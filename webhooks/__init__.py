"""The Flask receiver: thin views that verify, parse, record and acknowledge; decisions live in relay/."""
