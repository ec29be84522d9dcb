"""minih/app"""
