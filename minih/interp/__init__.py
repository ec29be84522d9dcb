"""minih/interp"""
