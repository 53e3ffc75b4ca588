import KilnStore
