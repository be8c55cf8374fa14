"""Pure Krux logic on Arrow and plain Python: line rules, grouping, layout, run reports. No Beam, no I/O."""
