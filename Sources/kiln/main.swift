import KilnCommands

await Kiln.runMain()
