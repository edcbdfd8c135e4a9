"""dijlepost: the City of Mechelen's outgoing letters, eBox first and paper for everyone else."""
