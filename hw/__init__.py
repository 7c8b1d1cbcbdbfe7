"""ommatidia.hw"""
