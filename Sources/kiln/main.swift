import KilnCommands
import KilnModel

await Kiln.runMain()
