"""gcop-env: guide-core steering of black-box LLMs as a Gymnasium environment."""
