"""Activities: meetings and outings, attendance, reports and the budget."""
