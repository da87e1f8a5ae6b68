"""Slack: the bolt app (commands, interactivity, events), the Chat port, user-group grants."""
