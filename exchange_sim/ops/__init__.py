"""EWS operations: one module per family. Each operation takes (Ctx, request element) and
returns the complete response document."""
