"""Image handling: reading stacks frame by frame, and PNG encoding."""
