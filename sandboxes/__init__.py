"""Local stand-ins for the services dijlepost talks to (the federal eBox, the print house).

They serve the tests, the demo and the benchmarks; production code never imports them.
"""
