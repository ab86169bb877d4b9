"""The embedded demo (`make run`): its digits data and its pre-trained source backbone."""
