"""Field mapping: mapping rules, type inference, field naming, custom-field creation (also in HubSpot)."""
