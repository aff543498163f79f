"""Everything that imports discord.py lives in this package (and in cogs/)."""
