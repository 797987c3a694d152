"""Docker mode: the two workspaces as Compose services, and the offline image build."""
