"""minih/training"""
