"""ommatidia.sim"""
